/* Unit tests of mig_table_renames_first (through mig_parse): a table
 * renamed after other operations change it moves in front of them, which
 * then name it by its new name; what it cannot move past refuses the file. */
#include <stdlib.h>
#include <string.h>

#include "migration.h"
#include "unit.h"

static int parse(const char *text, struct migration *m, char *err, size_t n)
{
    return mig_parse(text, strlen(text), "t.json", m, err, n);
}

#define OPS(x) "{\"name\": \"m\", \"operations\": [" x "]}"
#define DROP_COL(t) "{\"drop_column\": {\"table\": \"" t "\", \"column\": \"c\"}}"
#define RENAME(f, t) "{\"rename_table\": {\"from\": \"" f "\", \"to\": \"" t "\"}}"
#define FKEY(t, ref) "{\"create_constraint\": {\"table\": \"" t "\", \"name\": \"k\", \"type\": \"foreign_key\"," \
                     " \"columns\": [\"a\"], \"references\": {\"table\": \"" ref "\", \"columns\": [\"id\"]}}}"

static void test_moves_in_front(void)
{
    struct migration m;
    char err[1024] = "";
    int ok = parse(OPS(DROP_COL("t") "," FKEY("o", "t") "," RENAME("t", "u") "," DROP_COL("x")), &m, err,
                   sizeof err) == 0;
    CHECK("a rename after changes of its table parses", ok);
    if (!ok) {
        printf("  %s\n", err);
        return;
    }
    CHECK("the rename comes first", m.ops[0].kind == MIG_RENAME_TABLE && !strcmp(m.ops[0].to, "u"));
    CHECK("the change before it names the new name", m.ops[1].kind == MIG_DROP_COLUMN && !strcmp(m.ops[1].table, "u"));
    CHECK("a foreign key to it references the new name",
          m.ops[2].kind == MIG_CREATE_CONSTRAINT && !strcmp(m.ops[2].ref_table, "u") && !strcmp(m.ops[2].table, "o"));
    CHECK("an operation after it stays where it was", !strcmp(m.ops[3].table, "x"));
    int in_order = 1;
    for (size_t i = 0; i < m.nops; i++)
        in_order &= m.ops[i].index == (int)i;
    CHECK("each index is the operation's position", in_order);
    mig_free(&m);
}

static void test_chain_of_renames(void)
{
    struct migration m;
    char err[1024] = "";
    int ok = parse(OPS(DROP_COL("a") "," RENAME("a", "b") "," DROP_COL("b") "," RENAME("b", "c")), &m, err,
                   sizeof err) == 0;
    CHECK("a table renamed twice with changes between parses", ok);
    if (!ok)
        return;
    CHECK("both renames first, in order", m.ops[0].kind == MIG_RENAME_TABLE && !strcmp(m.ops[0].from, "a") &&
          m.ops[1].kind == MIG_RENAME_TABLE && !strcmp(m.ops[1].from, "b"));
    CHECK("every change names the last name", !strcmp(m.ops[2].table, "c") && !strcmp(m.ops[3].table, "c"));
    mig_free(&m);
}

static void test_nothing_to_move(void)
{
    struct migration m;
    char err[1024] = "";
    int ok = parse(OPS(RENAME("t", "u") "," DROP_COL("u")), &m, err, sizeof err) == 0;
    CHECK("a rename already first stays as written",
          ok && m.ops[0].kind == MIG_RENAME_TABLE && !strcmp(m.ops[1].table, "u"));
    if (ok)
        mig_free(&m);
}

static void test_refused_past_sql(void)
{
    struct migration m;
    char err[1024] = "";
    int rc = parse(OPS(DROP_COL("t") ", {\"sql\": {\"up\": \"COMMENT ON TABLE t IS 'x'\"}}," RENAME("t", "u")), &m,
                   err, sizeof err);
    CHECK("a rename cannot move past a sql operation after a change of its table", rc != 0);
    CHECK("the refusal says to put the rename first", strstr(err, "put the rename before operations[0]") != NULL);
    if (rc == 0)
        mig_free(&m);
    rc = parse(OPS("{\"sql\": {\"up\": \"COMMENT ON TABLE t IS 'x'\"}}," DROP_COL("t") "," RENAME("t", "u")), &m,
               err, sizeof err);
    CHECK("a sql operation before every change of the table does not stop it", rc == 0 &&
          m.ops[1].kind == MIG_RENAME_TABLE && !strcmp(m.ops[2].table, "u"));
    if (rc == 0)
        mig_free(&m);
}

static void test_moves_past_sql_not_naming_it(void)
{
    struct migration m;
    char err[1024] = "";
    int rc = parse(OPS(DROP_COL("t") ", {\"sql\": {\"up\": \"CREATE TYPE k AS ENUM ('a')\"}}," RENAME("t", "u")), &m,
                   err, sizeof err);
    CHECK("a sql operation whose text names neither name of the table does not stop the rename",
          rc == 0 && m.ops[0].kind == MIG_RENAME_TABLE && !strcmp(m.ops[1].table, "u") && m.ops[2].kind == MIG_SQL);
    if (rc == 0)
        mig_free(&m);
    rc = parse(OPS(DROP_COL("t") ", {\"sql\": {\"up\": \"UPDATE x SET a = 1\", \"down\": \"SELECT * FROM u\"}},"
                   RENAME("t", "u")), &m, err, sizeof err);
    CHECK("one whose down names the new name does", rc != 0);
    if (rc == 0)
        mig_free(&m);
}

int main(void)
{
    test_moves_in_front();
    test_chain_of_renames();
    test_nothing_to_move();
    test_refused_past_sql();
    test_moves_past_sql_not_naming_it();
    return UNIT_RESULT();
}
