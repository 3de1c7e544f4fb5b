"""The formula-driven pretraining set: IFS maths, FractalDB's instance variants and
filling rate, and composed images that are pure functions of their keys."""
import numpy as np
import pytest

from mmseg_dida.datasets.formula import (
    HELDOUT_STREAM,
    TRAIN_STREAM,
    VARIANT_FACTORS,
    FormulaSet,
    chaos_game,
    fill_rate,
    instance_variants,
    sample_ifs,
)

SIERPINSKI = np.array([[0.5, 0, 0, 0.5, 0.0, 0.0, 1 / 3],
                       [0.5, 0, 0, 0.5, 0.5, 0.0, 1 / 3],
                       [0.5, 0, 0, 0.5, 0.25, 0.5, 1 / 3]])


def test_chaos_game_draws_the_attractor():
    """Sierpinski's triangle (0,0), (1,0), (0.5,1): after the burn-in every point is
    inside it and none in the first removed triangle (0.5,0), (0.25,0.5), (0.75,0.5)."""
    pts = chaos_game(SIERPINSKI, 5000, np.random.default_rng(0))
    x, y = pts[:, 0], pts[:, 1]
    eps = 1e-5
    assert pts.shape == (5000, 2)
    assert (y >= -eps).all() and (y <= 2 * x + eps).all() and (y <= 2 - 2 * x + eps).all()
    hole = (y < 0.5 - 1e-3) & (y > 2 * x - 1 + 1e-3) & (y > 1 - 2 * x + 1e-3)
    assert not hole.any()
    # the three corners' neighbourhoods are all visited
    for cx, cy in [(0, 0), (1, 0), (0.5, 1)]:
        assert (np.hypot(x - cx, y - cy) < 0.05).sum() > 10


def test_random_systems_follow_fractaldb():
    rng = np.random.default_rng(3)
    for _ in range(50):
        maps = sample_ifs(rng)
        assert 2 <= len(maps) <= 7
        assert np.abs(maps[:, :6]).max() <= 1.0
        det = np.abs(maps[:, 0] * maps[:, 3] - maps[:, 1] * maps[:, 2])
        assert maps[:, 6].sum() == pytest.approx(1.0)
        np.testing.assert_allclose(maps[:, 6], det / det.sum())


def test_instance_variants_scale_one_parameter():
    maps = sample_ifs(np.random.default_rng(0))
    variants = instance_variants(maps)
    assert len(variants) == 25 and variants[0] is maps
    seen = set()
    for v in variants[1:]:
        changed = [k for k in range(7) if not np.array_equal(v[:, k], maps[:, k])]
        assert len(changed) == 1 and changed[0] < 6
        factor = v[0, changed[0]] / maps[0, changed[0]]
        assert factor == pytest.approx(min(VARIANT_FACTORS,
                                           key=lambda f: abs(f - factor)))
        np.testing.assert_allclose(v[:, changed[0]], maps[:, changed[0]] * factor)
        seen.add((changed[0], round(factor, 3)))
    assert len(seen) == 24


def test_fill_rate_counts_hit_pixels():
    t = np.linspace(0, 1, 10_000)
    diagonal = np.stack([t, t], 1)
    pad = 256 // 85
    assert fill_rate(diagonal, 256) == pytest.approx((256 - 2 * pad) / 256 ** 2)
    assert fill_rate(np.array([[0.0, 0.0], [np.inf, 1.0]]), 256) == 0.0


@pytest.fixture(scope='module')
def small_set():
    return FormulaSet(num_categories=3, seed=1, image_size=32, bank_size=32, points=3000)


def test_images_are_functions_of_their_keys(small_set):
    again = FormulaSet(num_categories=3, seed=1, image_size=32, bank_size=32,
                       points=3000)
    for a, b in zip(small_set.categories, again.categories):
        np.testing.assert_array_equal(a, b)
    img, label = small_set.sample(TRAIN_STREAM, 5, 7)
    img2, label2 = again.sample(TRAIN_STREAM, 5, 7)
    np.testing.assert_array_equal(img, img2)
    np.testing.assert_array_equal(label, label2)
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8
    assert label.shape == (32, 32) and label.max() <= 3
    held, _ = small_set.sample(HELDOUT_STREAM, 5)
    assert not np.array_equal(held, small_set.sample(TRAIN_STREAM, 5)[0])
    other_seed = FormulaSet(num_categories=3, seed=2, image_size=32, bank_size=32,
                            points=3000)
    assert not np.array_equal(other_seed.categories[0], small_set.categories[0])


def test_background_is_a_plain_gradient(small_set):
    """Labels 0 carry no texture: each channel of the background is an affine function
    of the pixel position (to uint8 rounding)."""
    checked = 0
    for i in range(20):
        img, label = small_set.sample(TRAIN_STREAM, i, 0)
        yy, xx = np.nonzero(label == 0)
        if len(yy) < 50:
            continue
        design = np.stack([np.ones_like(xx), xx, yy], 1).astype(float)
        for c in range(3):
            values = img[yy, xx, c].astype(float)
            coef, *_ = np.linalg.lstsq(design, values, rcond=None)
            residual = values - design @ coef
            # clipping at 0/255 is the only non-affine part
            inside = (values > 0) & (values < 255)
            assert np.abs(residual[inside]).max() < 1.5
        checked += 1
    assert checked >= 10
    # and the instances are labelled where they are drawn: most images have some
    labels = small_set.batch(TRAIN_STREAM, range(20), 0)[1]
    assert (labels > 0).mean() > 0.1


def test_a_filter_nothing_passes_is_one_error():
    with pytest.raises(RuntimeError, match='filling-rate filter rejects'):
        FormulaSet(num_categories=1, min_fill=1.01, points=500, image_size=16,
                   bank_size=16)
