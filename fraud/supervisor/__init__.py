"""fraud/supervisor"""
