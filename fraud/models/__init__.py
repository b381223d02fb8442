"""fraud/models"""
