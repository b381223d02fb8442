"""factors/rl"""
