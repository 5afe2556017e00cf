-- Give schema public to the database owner when it still belongs to the administrator (as it
-- does in databases created from a template where the bootstrap superuser owns it).
-- Argument: compute_ctl.db_owner.
DO $owner$
DECLARE
    current_owner pg_catalog.text;
BEGIN
    SELECT pg_catalog.pg_get_userbyid(n.nspowner)::pg_catalog.text
      INTO current_owner
      FROM pg_catalog.pg_namespace AS n
     WHERE n.nspname OPERATOR(pg_catalog.=) 'public';
    IF current_owner OPERATOR(pg_catalog.=) 'cloud_admin'
       OR current_owner OPERATOR(pg_catalog.=) 'zenith_admin' THEN
        EXECUTE pg_catalog.format('ALTER SCHEMA public OWNER TO %I',
                                  pg_catalog.current_setting('compute_ctl.db_owner'));
    END IF;
END
$owner$
