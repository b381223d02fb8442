"""factors: formulaic alpha expressions, evaluator, metrics, pool, RL miner, GP baseline."""
