DO $check$
BEGIN
    IF pg_catalog.current_setting('server_version_num')::pg_catalog.int4 < 160000 THEN
        RETURN;
    END IF;
    IF NOT pg_catalog.pg_has_role({privileged_role_literal}, 'pg_create_subscription', 'member') THEN
        RAISE EXCEPTION 'the privileged role is not a member of pg_create_subscription';
    END IF;
END
$check$;
