-- SKIP: moved into the per-database spec step (ChangeSchemaPerms), like 0007, for sequences.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON SEQUENCES TO {privileged_role} WITH GRANT OPTION;
