"""Who may do what: API keys and principals, the browser (Host/Origin) policy, and the
allow-list of the CLI's environment. No HTTP framework here."""
