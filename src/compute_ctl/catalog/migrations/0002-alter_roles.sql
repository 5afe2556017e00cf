-- Repair clusters where BYPASSRLS was once given to every role: members of the privileged role
-- inherit its privileges again, and every other role (Postgres' own pg_* roles aside) loses
-- BYPASSRLS. Both are Postgres' defaults, so re-running this on a healthy cluster is harmless.
DO $migration$
DECLARE
    member_name pg_catalog.text;
BEGIN
    FOR member_name IN
        SELECT rolname::pg_catalog.text FROM pg_catalog.pg_roles
         WHERE pg_catalog.pg_has_role(rolname, {privileged_role_literal}, 'member')
    LOOP
        EXECUTE pg_catalog.format('ALTER ROLE %I INHERIT', member_name);
    END LOOP;
    FOR member_name IN
        SELECT rolname::pg_catalog.text FROM pg_catalog.pg_roles
         WHERE NOT pg_catalog.pg_has_role(rolname, {privileged_role_literal}, 'member')
           AND NOT pg_catalog.starts_with(rolname, 'pg_')
    LOOP
        EXECUTE pg_catalog.format('ALTER ROLE %I NOBYPASSRLS', member_name);
    END LOOP;
END
$migration$;
