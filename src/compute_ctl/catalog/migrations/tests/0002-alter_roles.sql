DO $check$
DECLARE
    offender pg_catalog.text;
BEGIN
    SELECT rolname INTO offender FROM pg_catalog.pg_roles
     WHERE pg_catalog.pg_has_role(rolname, {privileged_role_literal}, 'member') AND NOT rolinherit
     LIMIT 1;
    IF offender IS NOT NULL THEN
        RAISE EXCEPTION 'member % of the privileged role does not inherit', offender;
    END IF;
    SELECT rolname INTO offender FROM pg_catalog.pg_roles
     WHERE NOT pg_catalog.pg_has_role(rolname, {privileged_role_literal}, 'member')
       AND NOT pg_catalog.starts_with(rolname, 'pg_') AND rolbypassrls
     LIMIT 1;
    IF offender IS NOT NULL THEN
        RAISE EXCEPTION 'role % can bypass RLS', offender;
    END IF;
END
$check$;
