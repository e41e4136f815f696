"""The admin API under /api/v1/: products and forgetting, campaigns, reports and conversions."""
