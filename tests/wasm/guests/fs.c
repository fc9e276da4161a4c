/* For each argument "r:PATH" or "w:PATH", tries to read or create PATH and prints one line:
   "OK <path> <first line>" or "ERR <path> <errno> <strerror>". */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *path = argv[i] + 2;
        int writing = argv[i][0] == 'w';
        int fd = writing ? open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644) : open(path, O_RDONLY);
        if (fd < 0) {
            printf("ERR %s %d %s\n", path, errno, strerror(errno));
            continue;
        }
        if (writing) {
            ssize_t n = write(fd, "written\n", 8);
            if (n < 0) printf("ERR %s %d %s\n", path, errno, strerror(errno));
            else printf("OK %s wrote\n", path);
        } else {
            char buf[128] = {0};
            ssize_t n = read(fd, buf, sizeof buf - 1);
            if (n < 0) printf("ERR %s %d %s\n", path, errno, strerror(errno));
            else printf("OK %s %s", path, buf);
        }
        close(fd);
    }
    return 0;
}
