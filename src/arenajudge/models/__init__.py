"""Preference models: the contract every backend follows, the CPU model (``gbdt``) and the
transformer backends (``transformer``)."""
