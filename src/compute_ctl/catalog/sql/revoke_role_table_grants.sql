-- Before a role is dropped: revoke the table privileges other roles granted it in schema public.
-- DROP OWNED revokes only what the current user may revoke; a grant made by another grantor
-- (typically the privileged role, through its grant option) survives it and blocks DROP ROLE.
-- Each grantor's grants are revoked as that grantor. Argument: compute_ctl.role_name.
DO $revoke$
DECLARE
    target pg_catalog.text := pg_catalog.current_setting('compute_ctl.role_name');
    grantors pg_catalog.text[];
    grantor pg_catalog.text;
BEGIN
    SELECT pg_catalog.array_agg(DISTINCT g.grantor::pg_catalog.text)
      INTO grantors
      FROM information_schema.role_table_grants AS g
     WHERE g.grantee::pg_catalog.text OPERATOR(pg_catalog.=) target
       AND g.table_schema::pg_catalog.text OPERATOR(pg_catalog.=) 'public';
    IF grantors IS NULL THEN
        RETURN;
    END IF;
    FOREACH grantor IN ARRAY grantors LOOP
        EXECUTE pg_catalog.format('SET LOCAL ROLE %I', grantor);
        EXECUTE pg_catalog.format(
            'REVOKE ALL PRIVILEGES ON ALL TABLES IN SCHEMA public FROM %I GRANTED BY %I',
            target, grantor);
    END LOOP;
END
$revoke$
