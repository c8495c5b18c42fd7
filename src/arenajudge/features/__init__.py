"""Features of battles: text statistics and embeddings."""

from arenajudge.features.builder import FeatureSpec, PairFeatures, feature_builder

__all__ = ["FeatureSpec", "PairFeatures", "feature_builder"]
