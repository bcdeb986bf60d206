"""Problems, datasets, the reward (grading), generation engines, the rollout table and its journal."""
