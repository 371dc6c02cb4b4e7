"""Outbound campaigns: contacts, pacing, retries, calling windows, a crash-safe store, the dialer."""
