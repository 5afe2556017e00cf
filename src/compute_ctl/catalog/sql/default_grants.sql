-- Let the privileged role use what the administrator creates in schema public, and (PostgreSQL
-- 15 and later, where public is no longer writable by everyone) let web_access create objects
-- there. Argument: compute_ctl.privileged_role.
DO $grants$
DECLARE
    privileged pg_catalog.text := pg_catalog.current_setting('compute_ctl.privileged_role');
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_namespace
                    WHERE nspname OPERATOR(pg_catalog.=) 'public') THEN
        RETURN;
    END IF;
    IF pg_catalog.current_setting('server_version_num')::pg_catalog.int4 OPERATOR(pg_catalog.>=) 150000
       AND EXISTS (SELECT FROM pg_catalog.pg_roles
                    WHERE rolname OPERATOR(pg_catalog.=) 'web_access') THEN
        GRANT CREATE ON SCHEMA public TO web_access;
    END IF;
    EXECUTE pg_catalog.format(
        'ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO %I WITH GRANT OPTION',
        privileged);
    EXECUTE pg_catalog.format(
        'ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON SEQUENCES TO %I WITH GRANT OPTION',
        privileged);
END
$grants$
