-- SKIP: meant to stop roles from creating subscriptions by taking REPLICATION away from every
-- role; that was not sufficient, and it is not done.
DO $migration$
DECLARE
    role_name pg_catalog.text;
BEGIN
    FOR role_name IN SELECT rolname::pg_catalog.text FROM pg_catalog.pg_roles WHERE rolreplication
    LOOP
        EXECUTE pg_catalog.format('ALTER ROLE %I NOREPLICATION', role_name);
    END LOOP;
END
$migration$;
