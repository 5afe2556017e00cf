-- The privileged role may read monitoring views and hand that right on.
GRANT pg_monitor TO {privileged_role} WITH ADMIN OPTION;
