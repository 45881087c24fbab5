-- retired.sql - functions and triggers that no longer exist, dropped by name and signature so
-- that a database migrated by an older binary keeps none of them. Applied first: a function
-- whose signature or return type changes is dropped here and created again by its own file.
SELECT 1; -- nothing is retired yet
