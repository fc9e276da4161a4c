/* Never terminates on its own: used to prove the fuel and deadline limits stop it. */
volatile unsigned long counter;

int main(void) {
    for (;;) counter++;
}
