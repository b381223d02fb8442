"""finllm/llm"""
