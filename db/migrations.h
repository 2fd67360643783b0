/*
 * kiln registry: schema migrations embedded at build time (db/embed.py).
 * Migration i (1-based, numbered files db/NNNN_*.sql) brings the schema to
 * PRAGMA user_version i.
 */
#ifndef KILN_DB_MIGRATIONS_H
#define KILN_DB_MIGRATIONS_H

typedef struct {
	int version;      /* file number == user_version after it is applied */
	const char *name; /* file name without number and extension */
	const char *sql;  /* whole file text */
} ks_db_migration_t;

extern const ks_db_migration_t ks_db_migrations[];
extern const unsigned ks_db_migration_count;

/*
 * The PostgreSQL twins (db/pg/NNNN_*.sql): migration i brings a PostgreSQL
 * registry to version i (table kiln_schema). tests/unit/test_db_schema.c
 * checks that both sets describe the same tables, columns and unique
 * constraints.
 */
extern const ks_db_migration_t ks_db_pg_migrations[];
extern const unsigned ks_db_pg_migration_count;

#endif
