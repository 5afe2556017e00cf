-- SKIP: superseded, like 0005, for sequences.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON SEQUENCES TO {privileged_role};
