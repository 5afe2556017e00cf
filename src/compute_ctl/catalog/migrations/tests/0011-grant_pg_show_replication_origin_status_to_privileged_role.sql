DO $check$
BEGIN
    IF NOT pg_catalog.has_function_privilege({privileged_role_literal},
            'pg_catalog.pg_show_replication_origin_status()', 'EXECUTE') THEN
        RAISE EXCEPTION 'the privileged role cannot execute pg_show_replication_origin_status';
    END IF;
END
$check$;
