"""finllm/reports"""
