"""Telegram on the gateway's side: the Mini App login (webapp.py)."""
