"""What adapted models do: masked-answer cross-entropy, mode connectivity, CKA, paired accuracy tests."""
