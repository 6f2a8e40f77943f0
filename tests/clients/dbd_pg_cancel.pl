#!/usr/bin/perl
# dbd_pg_cancel.pl: DBD::Pg's asynchronous queries and pg_cancel, the way
# its own test suite uses them, for tests/integration/test_relay_cancel.py.
#
#   dbd_pg_cancel.pl DSN USER PASSWORD N
#
# 1. pg_sleep(30) sent with pg_async is cancelled by pg_cancel (57014) and
#    a normal query works after it;
# 2. N times: a short async statement, pg_cancel once its result is in (so
#    the cancel finds the session idle), then pg_sleep(0.02), which must not
#    be the one cancelled. Prints "cancelled K of N".
# Prints one "ok ..." line per check and exits 0, or "FAIL ..." and exits 1.
use strict;
use warnings;
use DBI;
use DBD::Pg qw(:async);
use Time::HiRes qw(time sleep);

$| = 1;
my ($dsn, $user, $password, $n) = @ARGV;
$n //= 50;

sub fail { print "FAIL @_\n"; exit 1; }

my %opts = (RaiseError => 0, PrintError => 0, AutoCommit => 1);
my $dbh = DBI->connect($dsn, $user, $password, \%opts) or fail("connect: $DBI::errstr");
my $watch = DBI->connect($dsn, $user, $password, \%opts) or fail("connect: $DBI::errstr");
my $pid = $dbh->{pg_pid};

# A cancel that arrives while the backend still reads the query is ignored
# by Postgres: wait until the statement runs.
sub wait_running {
    my $deadline = time + 10;
    while (time < $deadline) {
        my ($running) = $watch->selectrow_array(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = ? AND state = 'active' AND query LIKE '%pg_sleep(30)%'",
            undef, $pid);
        return if $running;
        sleep 0.01;
    }
    fail("the async statement never showed up as running");
}

$dbh->do('SELECT pg_sleep(30)', {pg_async => PG_ASYNC}) or fail("async do: " . $dbh->errstr);
wait_running();
my $t0 = time;
my $res = $dbh->pg_cancel();
my $elapsed = time - $t0;
fail("pg_cancel returned " . ($res // 'undef')) unless $res;
my $state = $dbh->state;
fail("expected SQLSTATE 57014 after pg_cancel, got $state") unless $state eq '57014';
fail(sprintf("pg_cancel took %.3f s", $elapsed)) if $elapsed > 10;
print "ok pg_cancel cancelled the running statement (57014)\n";
my ($v) = $dbh->selectrow_array('SELECT 42');
fail("query after pg_cancel: " . ($dbh->errstr // 'no row')) unless defined $v && $v == 42;
print "ok a normal query works after pg_cancel\n";

my $cancelled = 0;
for my $i (1 .. $n) {
    $dbh->do('SELECT 1', {pg_async => PG_ASYNC}) or fail("async do $i: " . $dbh->errstr);
    my $deadline = time + 10;
    sleep 0.001 until $dbh->pg_ready or time > $deadline;
    $dbh->pg_cancel();
    my $ok = $dbh->do('SELECT pg_sleep(0.02)');
    if (!$ok) {
        fail("statement $i: " . $dbh->errstr) unless $dbh->state eq '57014';
        $cancelled++;
    }
}
print "ok $n statements after an idle cancel\n";
print "cancelled $cancelled of $n\n";
exit 0;
