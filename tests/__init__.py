"""The test suite, a package so that its helpers import as ``tests.helpers``.

(mmsegmentation installs a top-level ``tests`` package of its own; this one wins
because pytest.ini puts the repository root first on the import path.)"""
