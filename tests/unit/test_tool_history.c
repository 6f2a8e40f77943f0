/* Unit tests for the keys pgtandem writes in a migration tool's history
 * table: CRC-32, golang-migrate's advisory lock id (the vectors of its
 * database/util_test.go), Flyway's lock key and checksum of a file (line endings and a
 * BOM leave it unchanged; values as Flyway's ChecksumCalculator gives). */
#include <stdlib.h>

#include "tool_files.h"
#include "tool_history.h"
#include "unit.h"

static void crc32_check_value(void)
{
    CHECK("crc32 of 123456789", tool_crc32(0, (const unsigned char *)"123456789", 9) == 0xcbf43926UL);
    unsigned long part = tool_crc32(0, (const unsigned char *)"12345", 5);
    CHECK("crc32 continued", tool_crc32(part, (const unsigned char *)"6789", 4) == 0xcbf43926UL);
}

static void golang_lock_ids(void)
{
    char id[16];
    const char *one[1] = {"database_name"};
    tool_golang_lock_id(one, 1, id);
    CHECK("golang-migrate id of a database", !strcmp(id, "1764327054"));
    const char *two[2] = {"database_name", "schema_name_1"};
    tool_golang_lock_id(two, 2, id);
    CHECK("golang-migrate id with a schema", !strcmp(id, "3244152297"));
    two[1] = "schema_name_2";
    tool_golang_lock_id(two, 2, id);
    CHECK("golang-migrate id, another schema", !strcmp(id, "810103531"));
}

/* Flyway's key: 77431708279161 + Java's String.hashCode of "schema"."table" */
static void flyway_lock_ids(void)
{
    char id[24];
    tool_flyway_lock_id("public", "flyway_schema_history", id);
    CHECK("flyway lock of public.flyway_schema_history", !strcmp(id, "77433833903597"));
    tool_flyway_lock_id("a\"b", "t", id);
    CHECK("flyway lock, a quote doubled", !strcmp(id, "77432167190042"));
}

static void flyway_checksums(void)
{
    const char lf[] = "CREATE TABLE users (id serial PRIMARY KEY);\nSELECT 1;\n";
    const char crlf[] = "CREATE TABLE users (id serial PRIMARY KEY);\r\nSELECT 1;\r\n";
    const char bom[] = "\xef\xbb\xbf" "CREATE TABLE users (id serial PRIMARY KEY);\r\nSELECT 1;\r\n";
    const char cr[] = "CREATE TABLE users (id serial PRIMARY KEY);\rSELECT 1;";
    long want = 1608284581L;
    CHECK("flyway lf", tool_flyway_checksum(lf, sizeof lf - 1) == want);
    CHECK("flyway crlf", tool_flyway_checksum(crlf, sizeof crlf - 1) == want);
    CHECK("flyway bom", tool_flyway_checksum(bom, sizeof bom - 1) == want);
    CHECK("flyway cr", tool_flyway_checksum(cr, sizeof cr - 1) == want);
    const char utf8[] = "-- caf\xc3\xa9\nSELECT 2;\n";
    CHECK("flyway utf-8", tool_flyway_checksum(utf8, sizeof utf8 - 1) == 593762421L);
    CHECK("flyway empty", tool_flyway_checksum("", 0) == 0);
}

int main(void)
{
    crc32_check_value();
    golang_lock_ids();
    flyway_checksums();
    flyway_lock_ids();
    return UNIT_RESULT();
}
