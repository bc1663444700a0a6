"""Operations scripts: set-up helpers, local stack, Cassandra control, code generation."""
