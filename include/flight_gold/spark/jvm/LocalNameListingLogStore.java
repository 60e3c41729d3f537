package flightgold.delta;

import io.delta.storage.HDFSLogStore;
import java.io.File;
import java.io.FileNotFoundException;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.Arrays;
import java.util.Iterator;
import java.util.NoSuchElementException;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.ChecksumFileSystem;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

/**
 * Delta's log store for local roots (HDFSLogStore), listing a _delta_log by its file names.
 *
 * <p>Delta asks for "the log's files from version V on" some twenty times before a restarted
 * stream's first Gold commit. HDFSLogStore answers with Hadoop's listStatus of the whole folder,
 * which on a local file system stats every entry five times: 100,000 stat calls per listing for a
 * log of 20,000 commits, whatever V is. This store reads the folder's names (one directory read),
 * keeps those from V on, sorted as Delta sorts them, and reads a file's status only when Delta's
 * iterator gets to it: Delta stops at the version it needs, so a listing costs what it returns.
 * Writes, reads and everything else are HDFSLogStore's.
 */
public class LocalNameListingLogStore extends HDFSLogStore {
    public LocalNameListingLogStore(Configuration hadoopConf) {
        super(hadoopConf);
    }

    @Override
    public Iterator<FileStatus> listFrom(Path path, Configuration hadoopConf) throws IOException {
        FileSystem fs = path.getFileSystem(hadoopConf);
        Path parent = path.getParent();
        String[] names = new File(fs.makeQualified(parent).toUri()).list();
        if (names == null) {
            // HadoopFileSystemLogStore's answer for a missing folder, which Delta relies on.
            throw new FileNotFoundException(String.format("No such file or directory: %s", parent));
        }
        String from = path.getName();
        // Hadoop's checksummed local file system hides its own .NAME.crc files from listings.
        boolean hideChecksums = fs instanceof ChecksumFileSystem;
        String[] kept = Arrays.stream(names)
            .filter(name -> name.compareTo(from) >= 0)
            .filter(name -> !(hideChecksums && name.startsWith(".") && name.endsWith(".crc")))
            .sorted()
            .toArray(String[]::new);
        return new Iterator<FileStatus>() {
            private int next = 0;
            private FileStatus ahead = null;

            private FileStatus advance() {
                while (ahead == null && next < kept.length) {
                    try {
                        // Hadoop's own way to join a name that may hold a colon.
                        ahead = fs.getFileStatus(new Path(parent, new Path(null, null, kept[next++])));
                    } catch (FileNotFoundException removed) {
                        // Removed since the folder was read (Delta's log cleanup): as Hadoop's
                        // listing skips a file removed while it lists.
                    } catch (IOException e) {
                        throw new UncheckedIOException(e);
                    }
                }
                return ahead;
            }

            @Override
            public boolean hasNext() {
                return advance() != null;
            }

            @Override
            public FileStatus next() {
                FileStatus status = advance();
                if (status == null) {
                    throw new NoSuchElementException();
                }
                ahead = null;
                return status;
            }
        };
    }
}
