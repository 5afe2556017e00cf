-- AlterDatabricksRoles: every databricks_reader_<N> role gets the statement timeout that
-- databricks.reader_statement_timeout says (nothing when it is unset, empty or 0). Roles that
-- already have that value are left alone, so an unchanged catalog sees no ALTER ROLE.
DO $$
DECLARE
    timeout pg_catalog.text := pg_catalog.current_setting('databricks.reader_statement_timeout', true);
    reader pg_catalog.name;
BEGIN
    IF timeout IS NULL OR timeout = '' OR timeout = '0' THEN
        RETURN;
    END IF;
    FOR reader IN
        SELECT r.rolname
          FROM pg_catalog.pg_roles AS r
         WHERE r.rolname::pg_catalog.text ~ '^databricks_reader_[0-9]+$'
           AND NOT EXISTS (
               SELECT FROM pg_catalog.pg_db_role_setting AS s
                WHERE s.setrole = r.oid AND s.setdatabase = 0
                  AND ('statement_timeout=' || timeout) = ANY (s.setconfig))
    LOOP
        EXECUTE pg_catalog.format('ALTER ROLE %I SET statement_timeout = %L', reader, timeout);
        RAISE LOG 'Updated statement_timeout = % for role %', timeout, reader;
    END LOOP;
END
$$
