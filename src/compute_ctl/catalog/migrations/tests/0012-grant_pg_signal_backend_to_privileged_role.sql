DO $check$
DECLARE
    admin boolean;
BEGIN
    SELECT pg_catalog.bool_or(m.admin_option) INTO admin
      FROM pg_catalog.pg_auth_members AS m
     WHERE m.roleid = 'pg_signal_backend'::pg_catalog.regrole
       AND m.member = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = {privileged_role_literal});
    IF admin IS NULL THEN
        RAISE EXCEPTION 'the privileged role is not a member of pg_signal_backend';
    END IF;
    IF NOT admin THEN
        RAISE EXCEPTION 'the privileged role cannot grant pg_signal_backend';
    END IF;
END
$check$;
