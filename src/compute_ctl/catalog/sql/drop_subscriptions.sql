-- Drop the logical replication subscriptions of the current database without touching their
-- remote slots (a new branch must not consume its parent's slots; a database about to be dropped
-- cannot be while it has subscriptions).
DO $drop$
DECLARE
    sub pg_catalog.text;
BEGIN
    LOCK TABLE pg_catalog.pg_subscription IN ACCESS EXCLUSIVE MODE;
    FOR sub IN
        SELECT s.subname::pg_catalog.text
          FROM pg_catalog.pg_subscription AS s
          JOIN pg_catalog.pg_database AS d ON d.oid OPERATOR(pg_catalog.=) s.subdbid
         WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()
    LOOP
        EXECUTE pg_catalog.format('ALTER SUBSCRIPTION %I DISABLE', sub);
        EXECUTE pg_catalog.format('ALTER SUBSCRIPTION %I SET (slot_name = NONE)', sub);
        EXECUTE pg_catalog.format('DROP SUBSCRIPTION %I', sub);
    END LOOP;
END
$drop$
