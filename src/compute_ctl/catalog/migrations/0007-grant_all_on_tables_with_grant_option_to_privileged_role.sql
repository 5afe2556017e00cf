-- SKIP: moved into the per-database spec step (ChangeSchemaPerms), which runs in every database.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO {privileged_role} WITH GRANT OPTION;
