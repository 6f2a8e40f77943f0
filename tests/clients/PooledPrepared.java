// pgjdbc (prepareThreshold=1: server-side statements from the first run)
// through transaction pooling: CLIENTS threads, one connection each, run
// the same prepared statements ROUNDS times at once, so their transactions
// land on whichever server connection is free. Every answer is checked;
// prints "ok <rows> <most backends one client saw>". Any error: exit 1.
// usage: java -cp /usr/share/java/postgresql.jar PooledPrepared.java JDBC_URL USER PASSWORD CLIENTS ROUNDS
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.util.HashSet;
import java.util.Properties;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

public class PooledPrepared {
    public static void main(String[] args) throws Exception {
        Properties p = new Properties();
        p.setProperty("user", args[1]);
        p.setProperty("password", args[2]);
        p.setProperty("prepareThreshold", "1");
        int clients = Integer.parseInt(args[3]), rounds = Integer.parseInt(args[4]);
        AtomicLong rows = new AtomicLong();
        AtomicInteger most = new AtomicInteger();
        AtomicInteger failed = new AtomicInteger();
        Thread[] threads = new Thread[clients];
        CyclicBarrier together = new CyclicBarrier(clients); // all connected before any runs
        for (int k = 0; k < clients; k++) {
            final int me = k;
            threads[k] = new Thread(() -> {
                try (Connection conn = DriverManager.getConnection(args[0], p);
                     PreparedStatement add = conn.prepareStatement("SELECT ?::int + 1, pg_backend_pid()");
                     PreparedStatement txt = conn.prepareStatement("SELECT ?::text || ?::text")) {
                    HashSet<Integer> pids = new HashSet<>();
                    together.await();
                    for (int i = 0; i < rounds; i++) {
                        add.setInt(1, i);
                        try (ResultSet rs = add.executeQuery()) {
                            rs.next();
                            if (rs.getInt(1) != i + 1)
                                throw new Exception(i + " + 1 gave " + rs.getInt(1));
                            pids.add(rs.getInt(2));
                        }
                        txt.setString(1, "a");
                        txt.setString(2, String.valueOf(me));
                        try (ResultSet rs = txt.executeQuery()) {
                            rs.next();
                            if (!rs.getString(1).equals("a" + me))
                                throw new Exception("concat gave " + rs.getString(1));
                        }
                        rows.addAndGet(2);
                    }
                    most.accumulateAndGet(pids.size(), Math::max);
                } catch (Exception e) {
                    System.err.println("client " + me + ": " + e);
                    failed.incrementAndGet();
                }
            });
            threads[k].start();
        }
        for (Thread t : threads)
            t.join();
        if (failed.get() > 0)
            System.exit(1);
        System.out.println("ok " + rows.get() + " " + most.get());
    }
}
