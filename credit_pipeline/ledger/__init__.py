"""PostgreSQL ledger: engine (embedded server or a URL), sql/ migrations, the store."""
