"""Scoring engines: in-process (:mod:`.local`) and Ray Data (:mod:`.ray_engine`).

Both only use the model contract: ``load_model(dir)`` and ``predict_proba``.
"""
