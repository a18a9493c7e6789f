from serve.safety.cli import main

raise SystemExit(main())
