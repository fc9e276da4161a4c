/* A WASI command for `remora wasm run`: greets, echoes its arguments, and lists the directory it
 * was given at /data (if any). Everything it can see is what the command line granted. */
#include <dirent.h>
#include <stdio.h>

int main(int argc, char **argv) {
    printf("hello from a sandboxed guest\n");
    for (int i = 1; i < argc; i++) printf("arg %d: %s\n", i, argv[i]);
    DIR *dir = opendir("/data");
    if (dir == NULL) {
        printf("/data: not granted (add --dir HOST::/data)\n");
        return 0;
    }
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL)
        if (entry->d_name[0] != '.') printf("/data/%s\n", entry->d_name);
    closedir(dir);
    return 0;
}
