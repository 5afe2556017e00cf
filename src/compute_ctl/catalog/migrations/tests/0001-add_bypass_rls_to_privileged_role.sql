DO $check$
BEGIN
    IF NOT (SELECT rolbypassrls FROM pg_catalog.pg_roles
             WHERE rolname = {privileged_role_literal}) THEN
        RAISE EXCEPTION 'the privileged role cannot bypass RLS';
    END IF;
END
$check$;
