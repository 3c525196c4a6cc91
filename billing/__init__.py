"""Spend caps, customer budgets, Stripe plans, meters and webhooks, ROI (later issues)."""
