from safety.cli import main

raise SystemExit(main())
