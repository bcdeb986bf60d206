"""What every phase shares: the params schema, pair and seed-twin names, training units, table I/O, git reads."""
