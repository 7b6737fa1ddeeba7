"""Premium plans (and, later, subscriptions and Stripe billing)."""
