"""finllm/cli"""
