/* Unit tests for reading Alembic revision files without Python: the plain
 * and annotated assignment forms, merges (tuples, lists, over several
 * lines), and the judgement of upgrade()'s body. */
#include <stdlib.h>

#include "alembic_chain.h"
#include "unit.h"

static char err[1024];

static int parse(const char *text, struct alembic_rev *r)
{
    err[0] = '\0';
    return alembic_parse_rev(text, "v.py", r, err, sizeof err);
}

static void plain_and_typed_forms(void)
{
    struct alembic_rev r;
    CHECK("plain", parse("revision = 'b2'\ndown_revision = 'a1'\n", &r) == 0 && !strcmp(r.revision, "b2")
          && r.nparents == 1 && !strcmp(r.parents[0], "a1") && r.revision_line == 1 && r.down_line == 2);
    alembic_rev_free(&r);
    CHECK("typed", parse("revision: str = \"b2\"\ndown_revision: Union[str, None] = \"a1\"\n"
                         "branch_labels: Union[str, Sequence[str], None] = None\n", &r) == 0
          && !strcmp(r.revision, "b2") && r.nparents == 1 && !strcmp(r.parents[0], "a1"));
    alembic_rev_free(&r);
    CHECK("root", parse("revision = 'a1'\ndown_revision = None\n", &r) == 0 && r.nparents == 0 && r.down_line == 2);
    alembic_rev_free(&r);
    CHECK("not a revision", parse("import os\nrevisions = 3\n", &r) == 0 && r.revision == NULL);
    alembic_rev_free(&r);
    CHECK("indented is not module level", parse("def f():\n    revision = 'x'\n", &r) == 0 && !r.revision);
    alembic_rev_free(&r);
}

static void merges(void)
{
    struct alembic_rev r;
    CHECK("tuple", parse("revision = 'm'\ndown_revision = ('b2', 'c3')\n", &r) == 0 && r.nparents == 2
          && !strcmp(r.parents[1], "c3"));
    alembic_rev_free(&r);
    CHECK("list over lines", parse("revision = 'm'\ndown_revision: Union[str, Sequence[str], None] = [\n"
                                   "    'b2',\n    \"c3\",\n]\n", &r) == 0 && r.nparents == 2);
    alembic_rev_free(&r);
    CHECK("bad value", parse("revision = 'm'\ndown_revision = get_parent()\n", &r) == -1
          && strstr(err, "v.py:2: down_revision must be None"));
    alembic_rev_free(&r);
    CHECK("no down_revision", parse("revision = 'm'\n", &r) == -1 && strstr(err, "v.py:1: revision without"));
    alembic_rev_free(&r);
}

static void upgrade_body(void)
{
    struct alembic_rev r;
    CHECK("pass, comments, docstrings", parse("revision = 'm'\ndown_revision = ('a', 'b')\n\n"
          "def upgrade() -> None:\n    \"\"\"Merge.\n\n    Nothing here.\n    \"\"\"\n    # comment\n    pass\n\n\n"
          "def downgrade() -> None:\n    op.drop_column('t', 'x')\n", &r) == 0 && r.first_op_line == 0);
    alembic_rev_free(&r);
    CHECK("an operation", parse("revision = 'm'\ndown_revision = ('a', 'b')\n"
          "def upgrade():\n    '''Doc.'''\n    pass\n    op.add_column('t', sa.Column('x', sa.Integer()))\n", &r) == 0
          && r.first_op_line == 6);
    alembic_rev_free(&r);
}

int main(void)
{
    plain_and_typed_forms();
    merges();
    upgrade_body();
    return UNIT_RESULT();
}
