// pgjdbc with prepareThreshold=1: `SELECT * FROM checks WHERE id = ?` is a
// server-side prepared statement from its first run. Runs it a few times,
// prints "ready <columns>", waits for a line on stdin (the test changes the
// schema meanwhile), runs it again on the same connection and prints
// "after <columns>". Any error: message on stderr, exit 1.
// usage: java -cp /usr/share/java/postgresql.jar PreparedStar.java JDBC_URL USER PASSWORD ID
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.util.Properties;

public class PreparedStar {
    static String run(PreparedStatement ps, long id, int times) throws Exception {
        String cols = "";
        for (int i = 0; i < times; i++) {
            ps.setLong(1, id);
            try (ResultSet rs = ps.executeQuery()) {
                if (!rs.next())
                    throw new Exception("no row " + id);
                ResultSetMetaData md = rs.getMetaData();
                StringBuilder sb = new StringBuilder();
                for (int c = 1; c <= md.getColumnCount(); c++) {
                    if (c > 1)
                        sb.append(',');
                    sb.append(md.getColumnName(c));
                    rs.getObject(c); // every value readable with the shape it was described with
                }
                cols = sb.toString();
            }
        }
        return cols;
    }

    public static void main(String[] args) throws Exception {
        Properties p = new Properties();
        p.setProperty("user", args[1]);
        p.setProperty("password", args[2]);
        p.setProperty("prepareThreshold", "1");
        long id = Long.parseLong(args[3]);
        try (Connection conn = DriverManager.getConnection(args[0], p);
             PreparedStatement ps = conn.prepareStatement("SELECT * FROM checks WHERE id = ?")) {
            System.out.println("ready " + run(ps, id, 5));
            System.out.flush();
            new BufferedReader(new InputStreamReader(System.in)).readLine();
            System.out.println("after " + run(ps, id, 5));
        } catch (Exception e) {
            System.err.println("error: " + e);
            System.exit(1);
        }
    }
}
