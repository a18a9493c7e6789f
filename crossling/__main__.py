from crossling.cli import main

raise SystemExit(main())
