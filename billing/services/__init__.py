"""Every write of billing, by concern: the organization's account, plan and spend cap
(accounts), the usage ledger and its reports to Stripe (ledger), customer budgets (budgets),
Stripe's webhook events (webhooks) and warnings sent once (notices)."""
