-- SKIP: superseded. Default privileges on tables for the privileged role turned out not to
-- cover relations created by extensions; the per-database spec step grants them instead.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO {privileged_role};
