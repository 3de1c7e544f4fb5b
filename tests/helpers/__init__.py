"""What several test files share: the toy UDA models, batches and step contexts
(:mod:`tests.helpers.uda`) and the reliability tests' tool runs and checkpoint diffs
(:mod:`tests.helpers.reliability`)."""
