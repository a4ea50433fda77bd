"""Shipped rules and crosswalks (data files; see README.md)."""
